"""Pure types and rules of guest messaging; imports nothing with I/O."""
