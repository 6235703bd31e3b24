"""REST façades over the services, in the request shapes of the seeds."""
