"""The virtual device lab: an Android device behind a Python adbd, Linux boards behind real
sshd, and a sensor model driven by real CPU time. It never imports the transports it tests."""
