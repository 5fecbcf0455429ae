"""The measure floor: predict, eval, bench and info on files. Built on the core and the live drawing."""
