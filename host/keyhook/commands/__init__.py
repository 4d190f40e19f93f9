"""One module per `keyhook` command group; each defines click commands added in keyhook.cli."""
