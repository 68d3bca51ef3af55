"""robot_drivers package."""
