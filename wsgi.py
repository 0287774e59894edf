"""WSGI entry point for waitress and other servers; lets a bare `flask` find the app."""
from sipup import create_app

app = create_app()
