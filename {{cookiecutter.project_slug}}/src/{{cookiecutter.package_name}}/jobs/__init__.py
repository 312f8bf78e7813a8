"""The job path: the web records a job in the outbox, the relay and the web publish it to the queue, the
worker runs it (factors VI, VIII, IX)."""
