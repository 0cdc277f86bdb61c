"""The algorithm's shared parts: layers, hooks and gradients, targets and scores, map
post-processing. Nothing here knows about speed (:mod:`sise.runtime`) or about a method."""
