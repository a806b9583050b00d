"""Block Kit builders (slack_sdk models, which validate Slack's length limits). Pure: rows in, blocks out."""
