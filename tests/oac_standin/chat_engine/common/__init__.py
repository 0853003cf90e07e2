"""Stand-in of OpenAvatarChat for tests, written from docs/openavatarchat-handler.md."""
