# OAuth layer: token endpoint, access-token cache, refresh-token rotation.
