"""Per-API msgspec view Structs (what Apex reads off the wire); no behaviour, no apex imports."""
