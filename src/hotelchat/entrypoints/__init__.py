"""How the outside world starts HotelChat: the web app, the worker, the command line."""
