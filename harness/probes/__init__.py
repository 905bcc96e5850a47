"""What is sampled and parsed on the device besides latency: thermal state (and, next, energy,
memory and the environment). Pure analysis here; the agent does the on-device sampling."""
