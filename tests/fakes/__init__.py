"""Local servers that speak our providers' wire protocols (Mandrill, Twilio, SMTP), for tests and benchmarks.

Import the servers from their modules (``tests.fakes.mandrill_server`` ...): this package imports none
of them, so ``python -m tests.fakes.<server>`` runs a module that was not imported before.
"""
