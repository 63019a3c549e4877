"""Building blocks of recipes whose records are code: split a model's answer into a
solution and its tests, run them in the sandbox, and revise from the error output."""
