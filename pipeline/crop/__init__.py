"""The crop stage's library code: split recordings into one stream per camera."""
