"""Pure business rules of the desk: standard library only, time passed in."""
