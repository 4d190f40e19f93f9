# App layer: the commands a paired app may give.
