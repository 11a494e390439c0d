import os
import sys

# Make `helpers` importable from the tests without installing it.
sys.path.insert(0, os.path.dirname(__file__))
