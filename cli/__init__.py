"""imctl: deploy and operate the bundled IM server.

Importing this package must stay cheap: ``imctl --help`` pays for everything imported here.
"""
