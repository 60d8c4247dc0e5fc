‘7ú!= vsX˜XX vED˜VR
¡7ú!=ŸXwo›vo›btµe|D³JU[›vYXžbt·Ko‰„7ú!=G“OZˆ‚7ú!=4