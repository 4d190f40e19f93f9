# Engine layer: events -> rules -> requests; fire queue, retries with back-off.
