"""The pseudo-fields of a monday item, beside its column ids."""

#: pseudo-field: the item's group id (read), the group to create in or move to (write)
GROUP = "__group__"
#: pseudo-field of an update: archive the item
ARCHIVE = "__archive__"
#: the item's name
NAME = "name"
