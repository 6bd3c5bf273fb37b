"""The organizer's side: a challenge profile -> a Codabench competition bundle (``leafsub bundle``)."""
