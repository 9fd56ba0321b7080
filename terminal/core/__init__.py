"""The checkout core: menu, money, pricing, nutrition and the session state machine.

Pure Python: no Qt, no I/O. It may import the standard library and ``vision`` types only.
"""
