"""The evidence store: media kept encrypted at rest, for every domain that keeps media."""
