import sys
from pathlib import Path

# the float64 reference formulas live beside the tests
sys.path.insert(0, str(Path(__file__).parent))
