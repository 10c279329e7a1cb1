"""The factory CLI: the local stack manager and the main job."""
