"""REST façades over the services (the documented APIs that are not GraphQL): one module per resource, common.py for
what every route shares (bearer auth, JSON bodies with a size limit, JSON errors with their HTTP status)."""
