"""SMTP authenticators (spec chapter "SMTP authentication"): the contract in
base.py, and one module per driver (plaintext, cram_md5), each registered in
exim_py/registry.py."""
