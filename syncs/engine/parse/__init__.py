"""Reading a feed's bytes into nights: decoding, splitting into event texts, the iCal reader."""
