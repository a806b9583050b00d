"""What billbot tells Slack: reactions run after commit (exception messages, PDFs into threads),
the digest and SLA posts, replies to the person who clicked, the App Home, progress messages, and
the Web API client. Workflows never import this package; :mod:`bot.runtime` wires it to events."""
