"""An example third-party medrecon plugin."""
