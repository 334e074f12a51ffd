"""The Canary readings API's code beside the design-card modules at the repository root.

ingest/ is the write path, readings/ one device's history, statistics/ the statistics over time
buckets and the fleet, access/ who may call what, web/ the HTTP plumbing, openapi/ the API's
document, dashboard/ the page, cli/ the command line, production/ the production command.
"""
