"""Placeholder: lab 1's backpropagation module is being written."""
