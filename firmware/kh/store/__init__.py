# Store layer: files on littlefs (the unix port: any mounted VFS), replaced atomically.
