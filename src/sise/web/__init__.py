"""``sise app``: a local web page to explore the explanation of one photo."""
