"""Speed: everything that makes an explanation fast without changing what it computes."""
