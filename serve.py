"""Run the service in production: nginx in front, the app in granian's WSGI workers behind it.

    python serve.py

Settings come from the environment (README.md, Settings); canary/production/ holds how it works.
"""
import sys

from canary.production.supervisor import main

if __name__ == "__main__":
    sys.exit(main())
