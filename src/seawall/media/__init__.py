"""Safe decoding of images and video, thumbnails, blurred/greyscale rendering."""
