"""`python -m sipup.serving`: one serving process of `flask serve --processes N`, started by its supervisor."""

from sipup.serving import main

main()
