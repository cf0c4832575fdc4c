"""``python -m advframe`` (also what ``torchrun -m advframe`` runs)."""

from advframe.cli import main

if __name__ == "__main__":
    main()
