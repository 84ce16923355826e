"""The publisher's side: signing a tree, checking a published site, the
development server and its throwaway CA, git-host URLs."""
