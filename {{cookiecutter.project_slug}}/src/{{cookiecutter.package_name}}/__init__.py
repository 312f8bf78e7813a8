"""{{ cookiecutter.project_name }}: a twelve-factor web service."""
