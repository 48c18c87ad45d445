"""The HTTP server: app assembly, endpoints, the request pipeline and response writers."""
