"""talbench's test bed: not part of the product (not in the wheel); talbench never imports it."""
