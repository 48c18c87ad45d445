"""Client request -> upstream request building blocks shared by more than one direction."""
