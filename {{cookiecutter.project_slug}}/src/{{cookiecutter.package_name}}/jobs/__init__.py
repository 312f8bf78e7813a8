"""Jobs: recorded in the outbox, published to the queue, run by the worker (factors VI, VIII, IX)."""
