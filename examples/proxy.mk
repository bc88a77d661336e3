# issue 6: upstream proxy, quickstart, end-to-end tests and benchmark (landing)
