"""One module per translated (client dialect, upstream dialect) pair; ``apex.translate.table`` lists them."""
