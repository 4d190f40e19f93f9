# One exception for everything the store refuses. `code` is stable and machine-readable
# (invalid_rule, invalid_setting, not_found, too_many, no_space, store_failed); `message` names
# the rule and the field and says what to do. Neither ever holds a secret value.


class StoreError(Exception):
    def __init__(self, code, message=""):
        super().__init__(code, message)
        self.code = code
        self.message = message
