"""Factor VII: the web process, a self-contained ASGI app served by uvicorn on $PORT."""
