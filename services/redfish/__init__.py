"""The Redfish front end: HTTPS resources over the bus (DSP0266), sessions, SSE events and virtual media."""
