// Lets a library whose sources are still to come be defined; it holds nothing.
