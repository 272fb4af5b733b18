"""``python -m trident_vision``."""

from trident_vision.cli import main

if __name__ == "__main__":
    main()
